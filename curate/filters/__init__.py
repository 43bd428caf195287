"""The rules, one decision per module (image checks, opt-out, dedup, text), without Beam: a rule takes a record
and returns the kept record or a `Rejected` with its reason (datatrove's contract); curate.pipelines applies
them (`curate.pipelines.common.ApplyFilter`)."""
