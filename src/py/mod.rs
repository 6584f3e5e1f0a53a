//! The Python edge: conversion between Python objects and core values, and the native
//! classes and functions of `wandb_nexus._core`.

pub mod aio;
pub mod convert;
pub mod lambda;
pub mod media;
pub mod run;
