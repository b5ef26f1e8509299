//! Unit tests of the caller with fake plugins (shell scripts); no root needed.
