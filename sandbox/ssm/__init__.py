"""SSM: managed instances, AWS documents, Run Command lifecycle and patch compliance."""
