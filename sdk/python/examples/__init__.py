"""Example apps that use stepup_client."""
