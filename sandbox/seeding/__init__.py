"""Scenario seeding: a declarative landing zone (demo.yml) or a synthetic fleet, created through boto3."""
