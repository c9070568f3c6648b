"""dockerbot: manage Docker images on your hosts from Slack."""

from bot.engine.compat import defer_ssh_transport

# Before anything imports docker: paramiko and its kin load only in a process with an ssh:// host.
defer_ssh_transport()
