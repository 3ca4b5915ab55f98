//! Building and running a gateway: the `run` command, the demo, config file
//! watching and reloads, logging and signals.

pub mod demo;
pub mod reload;
pub mod run;
pub mod watch;
