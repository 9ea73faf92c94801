"""Dispatch: the run of each message (:mod:`._run`) and the dispatcher (:mod:`._dispatcher`).

A package so that the run's layout stays private to the two modules that know it. This
file imports neither: the unit of work and the middleware import :mod:`._run` without
pulling in the dispatcher (which imports them back).
"""
