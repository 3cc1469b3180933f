//! The subcommands.

pub mod audit;
pub mod bulk;
pub mod connect;
pub mod sim_server;
pub mod simulate;
pub mod tables;
pub mod transition;
