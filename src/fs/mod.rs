//! Filesystem primitives every stage's writers share: files and directories that appear
//! whole or not at all.

pub mod atomic;
