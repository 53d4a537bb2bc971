#!/usr/bin/env python3
"""Lays out a single-layer OCI image from a root file system directory and
writes it as an OCI archive (a tar of an OCI image layout) that
`ctr -n k8s.io images import` accepts. There is no registry here, so every
image the lab runs is made this way.

usage: oci-archive.py ROOTFS NAME OUTPUT.tar [--entrypoint JSON-LIST] [--cmd JSON-LIST]
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import tarfile


def deterministic_layer(rootfs):
    """A gzip'd tar of ROOTFS with fixed owners and times, so the same
    rootfs always gives the same digest."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                path = os.path.join(directory, name)
                info = tar.gettarinfo(path, arcname=os.path.relpath(path, rootfs))
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mtime = 0
                if info.isreg():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    diff_id = hashlib.sha256(raw.getvalue()).hexdigest()
    compressed = io.BytesIO()
    with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return compressed.getvalue(), diff_id


def blob(data):
    return hashlib.sha256(data).hexdigest(), data


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("rootfs")
    parser.add_argument("name")
    parser.add_argument("output")
    parser.add_argument("--entrypoint", type=json.loads, default=[], help='e.g. \'["/pause"]\'')
    parser.add_argument("--cmd", type=json.loads, default=[], help='e.g. \'["sh", "-c", "..."]\'')
    args = parser.parse_args()

    layer, diff_id = deterministic_layer(args.rootfs)
    layer_digest, _ = blob(layer)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Entrypoint": args.entrypoint or None,
            "Cmd": args.cmd or None,
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff_id]},
    }
    config_digest, config_bytes = blob(json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + config_digest,
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": "sha256:" + layer_digest,
                "size": len(layer),
            }
        ],
    }
    manifest_digest, manifest_bytes = blob(json.dumps(manifest, sort_keys=True).encode())
    tag = args.name.rsplit(":", 1)[1] if ":" in args.name.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": "sha256:" + manifest_digest,
                "size": len(manifest_bytes),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": args.name,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }
    files = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps(index, sort_keys=True).encode(),
        "blobs/sha256/" + layer_digest: layer,
        "blobs/sha256/" + config_digest: config_bytes,
        "blobs/sha256/" + manifest_digest: manifest_bytes,
    }
    temporary = args.output + ".tmp"
    with tarfile.open(temporary, "w") as tar:
        for directory in ["blobs", "blobs/sha256"]:
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    os.replace(temporary, args.output)


if __name__ == "__main__":
    main()
