//! The Python edge: conversion between Python objects and core values, and the native
//! classes and functions of `wandb_nexus._core`.

pub mod aio;
pub mod arrays;
pub mod artifact;
pub mod convert;
pub mod lambda;
pub mod media;
pub mod media_core;
pub mod run;
