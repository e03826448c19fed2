//! The deployment config (`ocellus run --config FILE`), validated at start-up.
//!
//! SKELETON — to be written.
