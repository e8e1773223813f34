"""hullhunter package."""
