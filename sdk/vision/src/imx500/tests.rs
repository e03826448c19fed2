//! Tests of the IMX500 tensor format, the capture file and the on-sensor inference.

#![allow(unused_imports)]
use super::format::*;
