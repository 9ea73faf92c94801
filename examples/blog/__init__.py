"""A small blog service built on messagebus: the demo of the library."""
