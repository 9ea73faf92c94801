"""Runnable examples of messagebus."""
