//! Integration tests of the emulator, one file per behaviour.

mod common;
mod events_timing;
mod golden;
mod mapping;
mod properties;
mod runs;
