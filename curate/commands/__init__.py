"""The commands: `curate` and every subcommand (docs/ARCHITECTURE.md). Nothing else imports this package."""
