//! The images apps run: whether each is on the box, and loading one from a file.
//!
//! An offline box cannot pull, and Swarm does not say so: a service whose image is
//! missing sits at 0/1 until the install's converge timeout (120 s) and then fails
//! with `No such image`. So every image is checked before anything is deployed: on
//! this node's Docker engine, or, for an image named after the configured
//! `orchestrator.local_registry`, in that registry (Docker Registry HTTP API v2, a
//! manifest HEAD). A missing image fails the install's validation at once, naming
//! it and saying how to bring it: `cubeos image load <file.tar>` (what `docker
//! save` writes), which this module streams into Docker's image load with progress.
//!
//! Limitations: only this node's engine is asked. On a multi-node Swarm, a service
//! placed on another node needs the image there too (or in the local registry); the
//! check says how many other nodes it could not ask.

use std::path::Path;
use std::time::Duration;

use bollard::Docker;
use bytes::Bytes;
use cubeos_contract::api::orchestrator::{ImageState, Location};
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;

/// The registry host an image reference names, if it names one (`host.tld/...`,
/// `host:port/...`, `localhost/...`): Docker's own rule for the first component.
pub fn registry_of(image: &str) -> Option<&str> {
    let (first, rest) = image.split_once('/')?;
    (!rest.is_empty() && (first.contains(['.', ':']) || first == "localhost")).then_some(first)
}

/// The repository and the tag or digest of an image reference, without its
/// registry host (`lib/app:1.2` -> `("lib/app", "1.2")`; no tag is `latest`).
fn repository_and_reference(image: &str) -> (&str, &str) {
    let path = match registry_of(image) {
        Some(host) => &image[host.len() + 1..],
        None => image,
    };
    if let Some((repo, digest)) = path.split_once('@') {
        return (repo, digest);
    }
    match path.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (path, "latest"),
    }
}

/// Checks each image: this node first, then the local registry (when configured
/// and the image is named after it).
pub async fn check(docker: &Docker, local_registry: &str, images: &[String]) -> Vec<ImageState> {
    let mut states = Vec::with_capacity(images.len());
    for image in images {
        let state = match docker.inspect_image(image).await {
            Ok(found) => ImageState {
                image: image.clone(),
                present: true,
                location: Some(Location::Node),
                size: found.size,
            },
            Err(_) if !local_registry.is_empty() && registry_of(image) == Some(local_registry) => {
                let there = in_registry(local_registry, image).await;
                ImageState {
                    image: image.clone(),
                    present: there,
                    location: there.then_some(Location::Registry),
                    size: None,
                }
            }
            Err(_) => ImageState {
                image: image.clone(),
                present: false,
                location: None,
                size: None,
            },
        };
        states.push(state);
    }
    states
}

/// An image reference in Docker's full form (`nginx` ->
/// `docker.io/library/nginx:latest`; with a digest, `<repository>@<digest>`), so
/// that what a compose file names and what Docker lists compare equal.
pub fn normalize(image: &str) -> String {
    let (host, path) = match registry_of(image) {
        Some("index.docker.io") => ("docker.io", &image["index.docker.io/".len()..]),
        Some(host) => (host, &image[host.len() + 1..]),
        None => ("docker.io", image),
    };
    let library = if host == "docker.io" && !path.contains('/') {
        "library/"
    } else {
        ""
    };
    if let Some((repository, digest)) = path.split_once('@') {
        // A digest names the image whatever the tag says.
        let repository = repository.rsplit_once(':').map_or(repository, |(r, _)| r);
        return format!("{host}/{library}{repository}@{digest}");
    }
    let tagged = path.rsplit('/').next().is_some_and(|last| last.contains(':'));
    let tag = if tagged { "" } else { ":latest" };
    format!("{host}/{library}{path}{tag}")
}

/// Checks many images with one listing of this node's images, where [`check`]
/// asks Docker once per image: for the store's hundreds. Images named after the
/// local registry that the node lacks are asked of the registry, as in [`check`].
pub async fn check_listed(
    docker: &Docker,
    local_registry: &str,
    images: &[String],
) -> Result<Vec<ImageState>, bollard::errors::Error> {
    let listed = docker
        .list_images(None::<bollard::query_parameters::ListImagesOptions>)
        .await?;
    let mut sizes = std::collections::HashMap::new();
    for summary in &listed {
        for reference in summary.repo_tags.iter().chain(&summary.repo_digests) {
            sizes.insert(normalize(reference), summary.size);
        }
        sizes.insert(summary.id.clone(), summary.size);
    }
    let mut states = Vec::with_capacity(images.len());
    for image in images {
        let state = match sizes.get(&normalize(image)).or_else(|| sizes.get(image)) {
            Some(size) => ImageState {
                image: image.clone(),
                present: true,
                location: Some(Location::Node),
                size: Some(*size),
            },
            None => {
                let there = !local_registry.is_empty()
                    && registry_of(image) == Some(local_registry)
                    && in_registry(local_registry, image).await;
                ImageState {
                    image: image.clone(),
                    present: there,
                    location: there.then_some(Location::Registry),
                    size: None,
                }
            }
        };
        states.push(state);
    }
    Ok(states)
}

/// Whether the registry at `host` has a manifest for `image`.
async fn in_registry(host: &str, image: &str) -> bool {
    let (repo, reference) = repository_and_reference(image);
    let url = format!("http://{host}/v2/{repo}/manifests/{reference}");
    let Ok(client) = reqwest::Client::builder().timeout(Duration::from_secs(2)).build() else {
        return false;
    };
    // Without these, a v2 registry may answer only for the old schema 1.
    let accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
                  application/vnd.docker.distribution.manifest.list.v2+json, \
                  application/vnd.docker.distribution.manifest.v2+json";
    client
        .head(url)
        .header("Accept", accept)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// How far a load has come: bytes sent to Docker, of the file's size.
pub type OnProgress<'a> = &'a mut (dyn FnMut(u64, u64) + Send);

/// Streams the image archive at `path` (what `docker save` writes) into Docker's
/// image load, reporting bytes sent; returns the images Docker says it loaded.
pub async fn load(docker: &Docker, path: &Path, on_progress: OnProgress<'_>) -> Result<Vec<String>, String> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let meta = file.metadata().await.map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", path.display()));
    }
    let total = meta.len();
    // Read ahead of Docker by a bounded amount: the file may be larger than RAM.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let (sent_tx, mut sent_rx) = tokio::sync::watch::channel(0u64);
    let reader = tokio::spawn(async move {
        let mut sent = 0u64;
        loop {
            let mut chunk = vec![0u8; 256 * 1024];
            match file.read(&mut chunk).await {
                Ok(0) => return,
                Ok(n) => {
                    chunk.truncate(n);
                    if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                        return;
                    }
                    sent += n as u64;
                    sent_tx.send_replace(sent);
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    let body = tokio_stream(rx);
    let options = bollard::query_parameters::ImportImageOptions {
        quiet: true,
        ..Default::default()
    };
    // A large archive takes longer than one ordinary Engine call may.
    let docker = docker.clone().with_timeout(Duration::from_secs(3600));
    let mut replies = docker.import_image_stream(options, body, None).boxed();
    let mut loaded = Vec::new();
    let mut failure = None;
    loop {
        tokio::select! {
            reply = replies.next() => match reply {
                Some(Ok(info)) => {
                    if let Some(name) = info.stream.as_deref().and_then(loaded_name) {
                        loaded.push(name);
                    }
                    if let Some(e) = info.error_detail.and_then(|d| d.message) {
                        failure = Some(e);
                    }
                }
                Some(Err(e)) => {
                    failure = Some(e.to_string());
                    break;
                }
                None => break,
            },
            changed = sent_rx.changed() => {
                if changed.is_ok() {
                    on_progress(*sent_rx.borrow_and_update(), total);
                }
            }
        }
    }
    reader.abort();
    on_progress(*sent_rx.borrow(), total);
    match failure {
        Some(e) => Err(e),
        None if loaded.is_empty() => {
            Err("Docker loaded no image from the file (is it a `docker save` archive?)".into())
        }
        None => Ok(loaded),
    }
}

/// The image named by a line of Docker's load reply (`Loaded image: x:1`, or
/// `Loaded image ID: sha256:...` for an archive without names).
fn loaded_name(line: &str) -> Option<String> {
    let line = line.trim();
    line.strip_prefix("Loaded image: ")
        .or_else(|| line.strip_prefix("Loaded image ID: "))
        .map(str::to_owned)
}

/// A channel's receiving end as a stream, for bollard's request body.
fn tokio_stream<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_like_docker_does() {
        assert_eq!(registry_of("lscr.io/linuxserver/navidrome:0.53.3"), Some("lscr.io"));
        assert_eq!(registry_of("127.0.0.1:5000/app:1"), Some("127.0.0.1:5000"));
        assert_eq!(registry_of("localhost/app"), Some("localhost"));
        assert_eq!(registry_of("linuxserver/navidrome:0.53.3"), None);
        assert_eq!(registry_of("busybox"), None);
        assert_eq!(
            repository_and_reference("127.0.0.1:5000/lib/app:1.2"),
            ("lib/app", "1.2")
        );
        assert_eq!(repository_and_reference("127.0.0.1:5000/app"), ("app", "latest"));
        assert_eq!(repository_and_reference("h.io/app@sha256:abc"), ("app", "sha256:abc"));
        assert_eq!(repository_and_reference("busybox:1"), ("busybox", "1"));
    }

    #[test]
    fn references_normalize_to_what_docker_lists() {
        assert_eq!(normalize("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(normalize("nginx:1.27"), "docker.io/library/nginx:1.27");
        assert_eq!(
            normalize("docker.io/library/nginx:1.27"),
            "docker.io/library/nginx:1.27"
        );
        assert_eq!(
            normalize("index.docker.io/deluan/navidrome"),
            "docker.io/deluan/navidrome:latest"
        );
        assert_eq!(
            normalize("lscr.io/linuxserver/sonarr:4"),
            "lscr.io/linuxserver/sonarr:4"
        );
        assert_eq!(normalize("127.0.0.1:5000/app"), "127.0.0.1:5000/app:latest");
        assert_eq!(normalize("redis:7@sha256:abc"), "docker.io/library/redis@sha256:abc");
        assert_eq!(
            normalize("redis@sha256:abc"),
            normalize("docker.io/library/redis@sha256:abc")
        );
    }

    #[test]
    fn a_load_names_the_image_it_loaded() {
        assert_eq!(loaded_name("Loaded image: x/y:1\n"), Some("x/y:1".into()));
        assert_eq!(loaded_name("Loading layer"), None);
    }
}
