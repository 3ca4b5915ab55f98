//! Building and running a gateway: the `run` command, the demo, config file
//! watching and reloads, logging and signals.

pub mod demo;
pub mod run;
pub mod watch;
