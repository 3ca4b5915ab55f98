//! Test helpers that start real things: redis-server, upstreams, gateways.
#![allow(dead_code)]

pub mod redis;
