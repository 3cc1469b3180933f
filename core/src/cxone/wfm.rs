//! See the module list in [`crate::cxone`].
