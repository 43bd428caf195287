"""Sample crawl."""
