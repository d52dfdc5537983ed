//! Host-process tests of the honker loadable extension live in `tests/`.
