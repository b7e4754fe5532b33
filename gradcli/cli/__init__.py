"""The command line: typer's app, thin wrappers over gradcli.commands, and exit statuses."""
