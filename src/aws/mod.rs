//! AWS, as far as the layer needs it: the W&B API key kept in Secrets Manager or SSM Parameter
//! Store (`secrets`) and the S3 objects artifacts reference (`s3`), fetched with the function
//! role's credentials (`credentials`) in requests signed with Signature Version 4 (`sigv4`),
//! over the process's one HTTP client.

pub mod credentials;
pub mod s3;
pub mod secrets;
pub mod sigv4;
