"""Regression fixtures: the CLI's in-process runner and an emulator environment of one's own."""

from cli.demo_env import bcdv, fresh  # noqa: F401
