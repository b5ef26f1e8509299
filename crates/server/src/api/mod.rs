pub mod patch;
pub mod selector;
pub mod table;
