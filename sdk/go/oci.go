package airlock

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
)

// An OCI image layout on disk (a directory with oci-layout, index.json and blobs/, as written by
// `skopeo copy docker://python:3.12 oci:DIR` or `docker save` converted with skopeo) is unpacked
// once per manifest into a cache directory, and that directory becomes the sandbox's root.
//
// The layers are hostile input: every blob's sha256 is checked; entry names are resolved inside
// the root (".." and absolute names are clamped to it, and symlinks met on the way are followed
// only within it, never to the host); device nodes are skipped; set-id bits are dropped; sizes
// are bounded.

const (
	maxOCIMetadataBytes = 4 << 20
	maxOCIExtractBytes  = 16 << 30
	maxSymlinkHops      = 40
)

func isOCILayout(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "oci-layout"))
	return err == nil
}

type ociDescriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Platform  *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
	} `json:"platform"`
}

type ociIndex struct {
	Manifests []ociDescriptor `json:"manifests"`
	Layers    []ociDescriptor `json:"layers"` // when the blob is a manifest
}

// blobPath is the file of a "sha256:<hex>" digest, or an error for any other form.
func blobPath(layout, digest string) (string, error) {
	hexPart := strings.TrimPrefix(digest, "sha256:")
	if len(hexPart) != 64 || hexPart == digest {
		return "", fmt.Errorf("unsupported digest %q (sha256 only)", digest)
	}
	if _, err := hex.DecodeString(hexPart); err != nil {
		return "", fmt.Errorf("bad digest %q", digest)
	}
	return filepath.Join(layout, "blobs", "sha256", hexPart), nil
}

// verifyingReader hashes what is read; check() compares with the digest at the end.
type verifyingReader struct {
	r      io.Reader
	h      hash.Hash
	digest string
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	return n, err
}

func (v *verifyingReader) check() error {
	if got := "sha256:" + hex.EncodeToString(v.h.Sum(nil)); got != v.digest {
		return fmt.Errorf("blob %s does not match its digest", v.digest)
	}
	return nil
}

func readBlobJSON(layout, digest string, out any) error {
	p, err := blobPath(layout, digest)
	if err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	v := &verifyingReader{r: io.LimitReader(f, maxOCIMetadataBytes+1), h: sha256.New(), digest: digest}
	data, err := io.ReadAll(v)
	if err != nil {
		return err
	}
	if len(data) > maxOCIMetadataBytes {
		return fmt.Errorf("blob %s is too large for metadata", digest)
	}
	if err := v.check(); err != nil {
		return err
	}
	return json.Unmarshal(data, out)
}

// pickManifest is the manifest for this machine (linux and its architecture), or the only one.
func pickManifest(layout string, index ociIndex, depth int) (ociDescriptor, error) {
	var chosen *ociDescriptor
	for i, m := range index.Manifests {
		if m.Platform == nil || (m.Platform.OS == "linux" && m.Platform.Architecture == runtime.GOARCH) {
			chosen = &index.Manifests[i]
			break
		}
	}
	if chosen == nil {
		return ociDescriptor{}, fmt.Errorf("no manifest for linux/%s", runtime.GOARCH)
	}
	if strings.Contains(chosen.MediaType, "index") || strings.Contains(chosen.MediaType, "manifest.list") {
		if depth > 2 {
			return ociDescriptor{}, errors.New("image indexes nested too deep")
		}
		var nested ociIndex
		if err := readBlobJSON(layout, chosen.Digest, &nested); err != nil {
			return ociDescriptor{}, err
		}
		return pickManifest(layout, nested, depth+1)
	}
	return *chosen, nil
}

// ociRootFS unpacks the layout (once per manifest digest) under cacheDir and returns the root.
func ociRootFS(layout, cacheDir string) (string, error) {
	var index ociIndex
	data, err := os.ReadFile(filepath.Join(layout, "index.json"))
	if err != nil {
		return "", err
	}
	if err := json.Unmarshal(data, &index); err != nil {
		return "", fmt.Errorf("index.json: %v", err)
	}
	desc, err := pickManifest(layout, index, 0)
	if err != nil {
		return "", err
	}
	var manifest ociIndex
	if err := readBlobJSON(layout, desc.Digest, &manifest); err != nil {
		return "", err
	}
	final := filepath.Join(cacheDir, strings.TrimPrefix(desc.Digest, "sha256:"))
	if _, err := os.Stat(filepath.Join(final, "rootfs")); err == nil {
		return filepath.Join(final, "rootfs"), nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(cacheDir, ".unpack-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, "rootfs")
	if err := os.Mkdir(root, 0o755); err != nil {
		return "", err
	}
	os.Chmod(tmp, 0o755)
	budget := int64(maxOCIExtractBytes)
	for _, layer := range manifest.Layers {
		if err := unpackLayer(layout, layer, root, &budget); err != nil {
			return "", fmt.Errorf("layer %s: %v", layer.Digest, err)
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		if _, statErr := os.Stat(filepath.Join(final, "rootfs")); statErr == nil {
			return filepath.Join(final, "rootfs"), nil // another process unpacked it first
		}
		return "", err
	}
	return filepath.Join(final, "rootfs"), nil
}

func unpackLayer(layout string, layer ociDescriptor, root string, budget *int64) error {
	p, err := blobPath(layout, layer.Digest)
	if err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	v := &verifyingReader{r: f, h: sha256.New(), digest: layer.Digest}
	var r io.Reader = v
	switch {
	case strings.HasSuffix(layer.MediaType, "tar+gzip") || strings.HasSuffix(layer.MediaType, "tar.gzip"):
		gz, err := gzip.NewReader(v)
		if err != nil {
			return err
		}
		defer gz.Close()
		r = gz
	case strings.HasSuffix(layer.MediaType, ".tar") || strings.HasSuffix(layer.MediaType, "rootfs.diff.tar"):
	default:
		return fmt.Errorf("unsupported layer type %q (tar and tar+gzip only)", layer.MediaType)
	}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if err := unpackEntry(tr, hdr, root, budget); err != nil {
			return fmt.Errorf("%q: %v", hdr.Name, err)
		}
	}
	io.Copy(io.Discard, v) // the whole blob counts for its digest
	return v.check()
}

// resolveInRoot is rel's parent directory resolved inside root (symlinks followed, but always
// within root, as if root were "/"), joined with rel's last name (not followed).
func resolveInRoot(root, rel string) (string, error) {
	clean := path.Clean("/" + rel)
	if clean == "/" {
		return root, nil
	}
	dir, name := path.Split(clean)
	resolved, err := resolveDir(root, dir)
	if err != nil {
		return "", err
	}
	return filepath.Join(resolved, name), nil
}

func resolveDir(root, dir string) (string, error) {
	current := "/"
	rest := strings.Split(strings.Trim(path.Clean("/"+dir), "/"), "/")
	hops := 0
	for len(rest) > 0 {
		part := rest[0]
		rest = rest[1:]
		if part == "" || part == "." {
			continue
		}
		if part == ".." {
			current = path.Dir(current)
			continue
		}
		next := path.Join(current, part)
		fi, err := os.Lstat(filepath.Join(root, next))
		switch {
		case err != nil && errors.Is(err, os.ErrNotExist):
			if err := os.Mkdir(filepath.Join(root, next), 0o755); err != nil {
				return "", err
			}
			current = next
		case err != nil:
			return "", err
		case fi.Mode()&os.ModeSymlink != 0:
			hops++
			if hops > maxSymlinkHops {
				return "", errors.New("too many symlinks")
			}
			target, err := os.Readlink(filepath.Join(root, next))
			if err != nil {
				return "", err
			}
			if strings.HasPrefix(target, "/") {
				current = "/"
			}
			rest = append(strings.Split(strings.Trim(target, "/"), "/"), rest...)
		case fi.IsDir():
			current = next
		default:
			return "", fmt.Errorf("%s is not a directory", next)
		}
	}
	return filepath.Join(root, current), nil
}

func unpackEntry(tr *tar.Reader, hdr *tar.Header, root string, budget *int64) error {
	clean := path.Clean("/" + hdr.Name)
	if clean == "/" {
		return nil
	}
	dir, name := path.Split(clean)
	if name == ".wh..wh..opq" { // opaque directory: what lower layers put there is hidden
		d, err := resolveDir(root, dir)
		if err != nil {
			return err
		}
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			os.RemoveAll(filepath.Join(d, e.Name()))
		}
		return nil
	}
	if strings.HasPrefix(name, ".wh.") { // whiteout: the lower layers' file is deleted
		target, err := resolveInRoot(root, dir+strings.TrimPrefix(name, ".wh."))
		if err != nil {
			return err
		}
		return os.RemoveAll(target)
	}
	target, err := resolveInRoot(root, clean)
	if err != nil {
		return err
	}
	mode := os.FileMode(hdr.Mode) & 0o777 // no set-id, no sticky bits
	switch hdr.Typeflag {
	case tar.TypeDir:
		fi, err := os.Lstat(target)
		if err == nil && fi.IsDir() {
			return os.Chmod(target, mode|0o700)
		}
		os.RemoveAll(target)
		return os.Mkdir(target, mode|0o700)
	case tar.TypeReg, tar.TypeRegA:
		if hdr.Size > *budget {
			return errors.New("the image is larger than airlock unpacks")
		}
		*budget -= hdr.Size
		os.RemoveAll(target)
		f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscallNoFollow, mode)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, io.LimitReader(tr, hdr.Size))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Chmod(target, mode)
		}
		return err
	case tar.TypeSymlink:
		os.RemoveAll(target)
		return os.Symlink(hdr.Linkname, target) // resolved in the guest's root, never here
	case tar.TypeLink:
		source, err := resolveInRoot(root, hdr.Linkname)
		if err != nil {
			return err
		}
		fi, err := os.Lstat(source)
		if err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("hard link to %q, which is not a regular file of the image", hdr.Linkname)
		}
		os.RemoveAll(target)
		return os.Link(source, target)
	default:
		return nil // devices, FIFOs and others: the sandbox makes its own /dev
	}
}
