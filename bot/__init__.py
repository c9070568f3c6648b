"""dockerbot: manage Docker images on your hosts from Slack."""
