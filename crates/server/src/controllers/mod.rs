//! The controllers' decision logic (being built).
