"""Deployment files rendered for the current configuration."""
