//! Reading a logged artifact back, with the queries the official SDK sends: its version by
//! name and alias, its manifest, the URLs of its files, and UseArtifact (lineage).

use std::collections::HashMap;

use serde_json::{json, Value as Json};

use super::text;
use crate::api::transport::{self, RunTarget, Transport};
use crate::artifact::Entry;
use crate::core::values::Value;
use crate::error::Error;

/// The official SDK's fragments of an artifact (a query may not carry one it does not use).
const ARTIFACT_FRAGMENTS: &str = "fragment ArtifactAliasFragment on ArtifactAlias { __typename \
id alias } fragment ArtifactFragment on Artifact { __typename id artifactSequence { \
...SourceCollectionInfoFragment } versionIndex artifactType { name } description metadata \
ttlDurationSeconds ttlIsInherited tags { ...TagFragment } historyStep state size digest \
commitHash fileCount createdAt updatedAt aliases @include(if: $includeAliases) { \
artifactCollection { ...CollectionInfoFragment } ...ArtifactAliasFragment } } fragment \
CollectionInfoFragment on ArtifactCollection { __typename name project { \
...ProjectInfoFragment } } fragment ProjectInfoFragment on Project { id internalId name \
entity { name } } fragment SourceCollectionInfoFragment on ArtifactSequence { __typename name \
project { ...ProjectInfoFragment } } fragment TagFragment on Tag { __typename id name }";

const MEMBERSHIP_FRAGMENT: &str = "fragment ArtifactMembershipFragment on \
ArtifactCollectionMembership { __typename id versionIndex createdAt aliases { \
...ArtifactAliasFragment } artifactCollection { ...CollectionInfoFragment } artifact { \
...ArtifactFragment } }";

/// What `artifact.wait()` asks once the artifact is saved.
const ARTIFACT_BY_ID: &str = "query ArtifactByID($id: ID!, $includeAliases: Boolean = true) { \
artifact(id: $id) { ...ArtifactFragment } }";

const MEMBERSHIP_BY_NAME: &str = "query ArtifactMembershipByName($entity: String!, $project: \
String!, $name: String!, $includeAliases: Boolean = false) { project(name: $project, \
entityName: $entity) { artifactCollectionMembership(name: $name) { \
...ArtifactMembershipFragment } } }";

const FETCH_MANIFEST: &str = "query FetchArtifactManifest($id: ID!) { artifact(id: $id) { \
currentManifest { ...DeferredManifestFragment } } } fragment DeferredManifestFragment on \
ArtifactManifest { file { directUrl } }";

const FILE_URLS: &str = "query GetArtifactMembershipFileUrls($entity: String!, $project: \
String!, $collection: String!, $alias: String!, $cursor: String, $perPage: Int) { \
project(name: $project, entityName: $entity) { artifactCollection(name: $collection) { \
__typename artifactMembership(aliasName: $alias) { files(after: $cursor, first: $perPage) { \
pageInfo { ...PageInfoFragment } edges { node { ...FileWithUrlFragment } } } } } } } \
fragment FileWithUrlFragment on File { __typename name directUrl } fragment \
PageInfoFragment on PageInfo { __typename endCursor hasNextPage }";

const USE_ARTIFACT: &str = "mutation UseArtifact($entityName: String!, $projectName: \
String!, $runName: String!, $artifactID: ID!) { useArtifact(input: {entityName: \
$entityName, projectName: $projectName, runName: $runName, artifactID: $artifactID}) { \
artifact { id digest description state createdAt metadata } } }";

/// File URLs asked for per page, as the official SDK asks.
const FILES_PER_PAGE: i64 = 5000;

/// A logged artifact version, as W&B describes it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoggedArtifact {
    pub id: String,
    pub entity: String,
    pub project: String,
    /// The collection's name.
    pub name: String,
    pub version_index: i64,
    pub artifact_type: String,
    pub digest: String,
    pub description: Option<String>,
    /// JSON text of an object, when it has metadata.
    pub metadata: Option<String>,
    pub aliases: Vec<String>,
    pub tags: Vec<String>,
    pub size: u64,
}

impl LoggedArtifact {
    pub fn version(&self) -> String {
        format!("v{}", self.version_index)
    }
}

/// The version `name` (`collection:alias` or `collection:vN`) in `entity/project` stands for.
pub async fn resolve(
    transport: &Transport,
    entity: &str,
    project: &str,
    name: &str,
) -> Result<LoggedArtifact, Error> {
    let query = format!("{MEMBERSHIP_BY_NAME} {MEMBERSHIP_FRAGMENT} {ARTIFACT_FRAGMENTS}");
    let variables = json!({"entity": entity, "project": project, "name": name});
    let answer = transport
        .graphql("ArtifactMembershipByName", &query, variables)
        .await?;
    if answer["project"].is_null() {
        return Err(Error::Usage(format!(
            "artifact {entity}/{project}/{name}: project {project:?} not found under entity \
             {entity:?}"
        )));
    }
    let membership = &answer["project"]["artifactCollectionMembership"];
    if membership.is_null() {
        return Err(Error::Usage(format!(
            "artifact {entity}/{project}/{name} not found"
        )));
    }
    let aliases = strings(&membership["aliases"], "alias");
    let version_index = membership["versionIndex"].as_i64().unwrap_or_default();
    let collection = &membership["artifactCollection"];
    let op = "ArtifactMembershipByName";
    logged(
        &membership["artifact"],
        collection,
        version_index,
        aliases,
        op,
    )
}

/// The artifact version whose id is `id`, with its aliases in its own collection.
pub async fn by_id(transport: &Transport, id: &str) -> Result<LoggedArtifact, Error> {
    let op = "ArtifactByID";
    let query = format!("{ARTIFACT_BY_ID} {ARTIFACT_FRAGMENTS}");
    let answer = transport.graphql(op, &query, json!({"id": id})).await?;
    let artifact = &answer["artifact"];
    if artifact.is_null() {
        return Err(Error::Comm(format!("W&B has no artifact with id {id:?}")));
    }
    let sequence = &artifact["artifactSequence"];
    let sequence_name = sequence["name"].as_str();
    let aliases = artifact["aliases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|alias| alias["artifactCollection"]["name"].as_str() == sequence_name)
        .filter_map(|alias| alias["alias"].as_str().map(str::to_string))
        .collect();
    let version_index = artifact["versionIndex"].as_i64().unwrap_or_default();
    logged(artifact, sequence, version_index, aliases, op)
}

/// The `field` of every item of `list`.
fn strings(list: &Json, field: &str) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item[field].as_str().map(str::to_string))
        .collect()
}

/// A version from an answer's `ArtifactFragment` and its collection (`name`, `project`).
fn logged(
    artifact: &Json,
    collection: &Json,
    version_index: i64,
    aliases: Vec<String>,
    op: &str,
) -> Result<LoggedArtifact, Error> {
    Ok(LoggedArtifact {
        id: text(artifact, "id", op)?,
        entity: text(&collection["project"]["entity"], "name", op)?,
        project: text(&collection["project"], "name", op)?,
        name: text(collection, "name", op)?,
        version_index,
        artifact_type: text(&artifact["artifactType"], "name", op)?,
        digest: text(artifact, "digest", op)?,
        description: artifact["description"].as_str().map(str::to_string),
        metadata: artifact["metadata"].as_str().map(str::to_string),
        aliases,
        tags: strings(&artifact["tags"], "name"),
        size: artifact["size"].as_u64().unwrap_or_default(),
    })
}

/// The artifact's manifest: its entries (with no local paths).
pub async fn manifest(transport: &Transport, logged: &LoggedArtifact) -> Result<Vec<Entry>, Error> {
    let op = "FetchArtifactManifest";
    let answer = transport
        .graphql(op, FETCH_MANIFEST, json!({"id": logged.id}))
        .await?;
    let url = text(
        &answer["artifact"]["currentManifest"]["file"],
        "directUrl",
        op,
    )?;
    let failed = |why: String| {
        Error::Comm(format!(
            "artifact {}/{}/{}:{}: cannot read its manifest: {why}",
            logged.entity,
            logged.project,
            logged.name,
            logged.version()
        ))
    };
    // A storage URL: signed, so sent without the API key.
    let response = transport::get_keyless(&url).await.map_err(failed)?;
    let body = response
        .bytes()
        .await
        .map_err(|e| failed(transport::error_chain(&e)))?;
    let json: Json =
        serde_json::from_slice(&body).map_err(|e| failed(format!("it is not JSON: {e}")))?;
    let contents = json["contents"]
        .as_object()
        .ok_or_else(|| failed("it has no contents".into()))?;
    Ok(contents
        .iter()
        .map(|(path, fields)| manifest_entry(path, fields))
        .collect())
}

fn manifest_entry(path: &str, fields: &Json) -> Entry {
    let reference = fields["ref"].as_str().map(str::to_string);
    let size = fields["size"].as_u64();
    Entry {
        path: path.to_string(),
        digest: fields["digest"].as_str().unwrap_or_default().to_string(),
        // A reference's 0 is wandb-core's "unknown".
        size: size.filter(|&size| size > 0 || reference.is_none()),
        local_path: None,
        reference,
        extra: fields["extra"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(key, value)| (key.clone(), Value::from_json(value)))
            .collect(),
    }
}

/// The URL of every stored file of the version, by path, page after page.
pub async fn file_urls(
    transport: &Transport,
    logged: &LoggedArtifact,
) -> Result<HashMap<String, String>, Error> {
    let op = "GetArtifactMembershipFileUrls";
    let mut urls = HashMap::new();
    let mut cursor = Json::Null;
    loop {
        let variables = json!({
            "entity": logged.entity, "project": logged.project, "collection": logged.name,
            "alias": logged.version(), "cursor": cursor, "perPage": FILES_PER_PAGE,
        });
        let answer = transport.graphql(op, FILE_URLS, variables).await?;
        let files = &answer["project"]["artifactCollection"]["artifactMembership"]["files"];
        for edge in files["edges"].as_array().into_iter().flatten() {
            let node = &edge["node"];
            if let (Some(name), Some(url)) = (node["name"].as_str(), node["directUrl"].as_str()) {
                urls.insert(name.to_string(), url.to_string());
            }
        }
        let page = &files["pageInfo"];
        if page["hasNextPage"].as_bool() != Some(true) || page["endCursor"].is_null() {
            return Ok(urls);
        }
        cursor = page["endCursor"].clone();
    }
}

/// Tells W&B the run at `target` used the artifact version with id `artifact_id`.
pub async fn record_use(
    transport: &Transport,
    target: &RunTarget,
    artifact_id: &str,
) -> Result<(), Error> {
    let variables = json!({
        "entityName": target.entity, "projectName": target.project,
        "runName": target.run_id, "artifactID": artifact_id,
    });
    transport
        .graphql("UseArtifact", USE_ARTIFACT, variables)
        .await
        .map(drop)
}
