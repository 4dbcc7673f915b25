"""What every effml package shares and nothing else: the errors a user can cause and fix."""
