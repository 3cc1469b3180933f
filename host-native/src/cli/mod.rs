//! The subcommands.

pub mod simulate;
