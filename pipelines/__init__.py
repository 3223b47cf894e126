"""Orchestration: the one ``Definitions``, jobs, schedules, resources, IO managers and the CLI."""
