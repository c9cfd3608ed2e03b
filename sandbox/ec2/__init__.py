"""EC2 behaviour moto lacks or gets wrong: CreateImage backups, paging, platforms, instance status."""
