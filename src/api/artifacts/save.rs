//! Saving an artifact as wandb-core does: CreateArtifact, a manifest id, signed URLs for the
//! files the server lacks, their uploads, the manifest, and the commit. A server that already
//! holds an artifact with the same digest answers COMMITTED, and nothing more is sent.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value as Json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::api::non_empty;
use crate::api::transport::{upload_headers, RunTarget, Transport, UploadTarget};
use crate::artifact::{self, Artifact};
use crate::error::Error;

use super::text;

/// Uploads in flight at once, per artifact or batch of run files: enough to fill a Lambda's
/// network, few enough that files read into memory stay bounded.
pub const MAX_PARALLEL_UPLOADS: usize = 8;

const CREATE_ARTIFACT: &str = "mutation CreateArtifact($input: CreateArtifactInput!) { \
createArtifact(input: $input) { artifact { id state artifactSequence { latestArtifact { id } \
} } } }";

const CREATE_ARTIFACT_MANIFEST: &str = "mutation CreateArtifactManifest($artifactID: ID!, \
$baseArtifactID: ID, $name: String!, $digest: String!, $entityName: String!, \
$projectName: String!, $runName: String!, $manifestType: ArtifactManifestType!, \
$includeUpload: Boolean!) { createArtifactManifest(input: {artifactID: $artifactID, \
baseArtifactID: $baseArtifactID, name: $name, digest: $digest, entityName: $entityName, \
projectName: $projectName, runName: $runName, type: $manifestType}) { artifactManifest { id \
file { id uploadUrl @include(if: $includeUpload) uploadHeaders @include(if: $includeUpload) \
} } } }";

const CREATE_ARTIFACT_FILES: &str = "mutation CreateArtifactFiles($input: \
CreateArtifactFilesInput!) { createArtifactFiles(input: $input) { files { edges { node { \
storagePath uploadUrl uploadHeaders uploadMultipartUrls { uploadID uploadUrlParts { \
partNumber uploadUrl } } artifact { id } } } } } }";

const COMMIT_ARTIFACT: &str = "mutation CommitArtifact($artifactID: ID!) { \
commitArtifact(input: {artifactID: $artifactID}) { artifact { id digest } } }";

/// Saves `artifact` for the run at `target` (whose entity and project it is stored under).
pub async fn save(
    transport: &Arc<Transport>,
    target: &RunTarget,
    artifact: &Artifact,
) -> Result<String, Error> {
    let digest = artifact.digest();
    let aliases: Vec<Json> = artifact
        .aliases
        .iter()
        .map(|alias| json!({"artifactCollectionName": artifact.name, "alias": alias}))
        .collect();
    let mut input = json!({
        "entityName": target.entity, "projectName": target.project,
        "artifactTypeName": artifact.artifact_type, "artifactCollectionName": artifact.name,
        "artifactCollectionNames": null, "runName": target.run_id, "digest": digest,
        "digestAlgorithm": artifact::DIGEST_ALGORITHM, "aliases": aliases,
        "enableDigestDeduplication": true,
        // As wandb-core: the step the artifact was logged at, null for step 0.
        "historyStep": artifact.history_step.filter(|&step| step > 0),
        "clientID": artifact.client_id, "sequenceClientID": artifact.sequence_client_id,
        "clientMutationId": null, "description": non_empty(&artifact.description),
        "metadata": non_empty(&artifact.metadata), "labels": null,
        "ttlDurationSeconds": null, "distributedID": null, "storageRegion": null,
    });
    if !artifact.tags.is_empty() {
        // As wandb-core: the key only when there are tags.
        let tags: Vec<Json> = artifact
            .tags
            .iter()
            .map(|tag| json!({"tagName": tag, "tagCategoryName": null, "attributes": null}))
            .collect();
        input["tags"] = Json::Array(tags);
    }
    let created = transport
        .graphql("CreateArtifact", CREATE_ARTIFACT, json!({"input": input}))
        .await?;
    let created = &created["createArtifact"]["artifact"];
    let id = text(created, "id", "CreateArtifact")?;
    match created["state"].as_str() {
        Some("COMMITTED") => return Ok(id),
        Some("PENDING") | Some("DELETED") => {}
        other => {
            return Err(Error::Comm(format!(
                "CreateArtifact: unexpected artifact state {other:?}"
            )))
        }
    }
    let base_id = created["artifactSequence"]["latestArtifact"]["id"].clone();
    let manifest_call = |digest: &str, include_upload: bool| {
        json!({
            "artifactID": id, "baseArtifactID": base_id, "name": "wandb_manifest.json",
            "digest": digest, "entityName": target.entity, "projectName": target.project,
            "runName": target.run_id, "manifestType": "FULL", "includeUpload": include_upload,
        })
    };
    let reserved = transport
        .graphql(
            "CreateArtifactManifest",
            CREATE_ARTIFACT_MANIFEST,
            manifest_call("", false),
        )
        .await?;
    let manifest_id = text(
        &reserved["createArtifactManifest"]["artifactManifest"],
        "id",
        "CreateArtifactManifest",
    )?;
    let birth_ids = upload_files(transport, artifact, &id, &manifest_id).await?;
    let manifest = artifact.manifest_json(|path| birth_ids.get(path).cloned());
    let manifest_digest = artifact::md5_b64(manifest.as_bytes());
    let answer = transport
        .graphql(
            "CreateArtifactManifest",
            CREATE_ARTIFACT_MANIFEST,
            manifest_call(&manifest_digest, true),
        )
        .await?;
    let file = &answer["createArtifactManifest"]["artifactManifest"]["file"];
    let upload = UploadTarget {
        name: "wandb_manifest.json".into(),
        url: text(file, "uploadUrl", "CreateArtifactManifest")?,
        headers: upload_headers(&file["uploadHeaders"]),
    };
    transport.upload(&upload, manifest.into_bytes()).await?;
    transport
        .graphql("CommitArtifact", COMMIT_ARTIFACT, json!({"artifactID": id}))
        .await?;
    Ok(id)
}

/// Asks for upload URLs for every file entry (references have no bytes to upload) and
/// uploads those the server lacks; returns the artifact id each entry's bytes are stored under.
async fn upload_files(
    transport: &Arc<Transport>,
    artifact: &Artifact,
    id: &str,
    manifest_id: &str,
) -> Result<HashMap<String, String>, Error> {
    let local: Vec<(&artifact::Entry, &std::path::Path)> = artifact.files().collect();
    if local.is_empty() {
        return Ok(HashMap::new()); // As wandb-core: no CreateArtifactFiles at all.
    }
    let files: Vec<Json> = local
        .iter()
        .map(|(entry, _)| {
            json!({"artifactID": id, "artifactManifestID": manifest_id, "name": entry.path,
                   "md5": entry.digest, "mimetype": null, "uploadPartsInput": null})
        })
        .collect();
    let input = json!({"artifactFiles": files, "storageLayout": "V2",
                       "clientMutationId": null, "cloudRegionID": null});
    let answer = transport
        .graphql(
            "CreateArtifactFiles",
            CREATE_ARTIFACT_FILES,
            json!({"input": input}),
        )
        .await?;
    let edges = answer["createArtifactFiles"]["files"]["edges"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if edges.len() != local.len() {
        return Err(Error::Comm(format!(
            "CreateArtifactFiles: asked for {} files, got {}",
            local.len(),
            edges.len()
        )));
    }
    let mut birth_ids = HashMap::new();
    let limit = Arc::new(Semaphore::new(MAX_PARALLEL_UPLOADS));
    let mut uploads = JoinSet::new();
    for ((entry, path), edge) in local.into_iter().zip(edges) {
        let node = &edge["node"];
        if let Some(birth) = node["artifact"]["id"].as_str() {
            birth_ids.insert(entry.path.clone(), birth.to_string());
        }
        let Some(url) = node["uploadUrl"].as_str() else {
            continue; // The server has these bytes already.
        };
        let target = UploadTarget {
            name: entry.path.clone(),
            url: url.to_string(),
            headers: upload_headers(&node["uploadHeaders"]),
        };
        let (transport, limit, path) = (transport.clone(), limit.clone(), path.to_path_buf());
        uploads.spawn(async move {
            let _permit = limit.acquire_owned().await;
            transport.upload_file(&target, path).await
        });
    }
    while let Some(joined) = uploads.join_next().await {
        joined.map_err(|e| Error::Comm(format!("an artifact upload failed: {e}")))??;
    }
    Ok(birth_ids)
}
