"""rlport.runtimes: the backends that run a bundle; :mod:`rlport.runtimes.registry` lists them."""
