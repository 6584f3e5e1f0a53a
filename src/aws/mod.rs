//! AWS, as far as the layer needs it: the W&B API key kept in Secrets Manager or SSM Parameter
//! Store (`secrets`), fetched with the function role's credentials (`credentials`) in requests
//! signed with Signature Version 4 (`sigv4`), over the process's one HTTP client.

pub mod credentials;
pub mod secrets;
pub mod sigv4;
