"""Test tools shipped as commands: the provider simulator."""
