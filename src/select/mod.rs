//! Selection methods: which pre-training samples to re-use for a target task.

pub mod uot;
