"""Tests of the sample crawl."""
