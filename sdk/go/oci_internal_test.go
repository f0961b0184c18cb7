package airlock

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

type entry struct {
	name, body, link string
	typ              byte
	mode             int64
}

// writeBlob stores data under blobs/sha256 and returns its digest.
func writeBlob(t *testing.T, layout string, data []byte) string {
	t.Helper()
	sum := sha256.Sum256(data)
	h := hex.EncodeToString(sum[:])
	os.MkdirAll(filepath.Join(layout, "blobs", "sha256"), 0o755)
	if err := os.WriteFile(filepath.Join(layout, "blobs", "sha256", h), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return "sha256:" + h
}

func layerOf(t *testing.T, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		mode := e.mode
		if mode == 0 {
			mode = 0o755
		}
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.name, Mode: mode, Typeflag: typ, Linkname: e.link, Size: int64(len(e.body))}
		if typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

// writeLayout makes an OCI image layout whose layers are `layers`, in order.
func writeLayout(t *testing.T, layout string, layers ...[]entry) {
	t.Helper()
	os.MkdirAll(layout, 0o755)
	os.WriteFile(filepath.Join(layout, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	var descs []map[string]any
	for _, l := range layers {
		descs = append(descs, map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
			"digest": writeBlob(t, layout, layerOf(t, l))})
	}
	config := writeBlob(t, layout, []byte(`{"architecture":"amd64","os":"linux"}`))
	manifest, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config}, "layers": descs})
	index, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []map[string]any{{
		"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": writeBlob(t, layout, manifest)}}})
	os.WriteFile(filepath.Join(layout, "index.json"), index, 0o644)
}

func TestOCILayersAreAppliedInOrderWithWhiteouts(t *testing.T) {
	dir := t.TempDir()
	writeLayout(t, filepath.Join(dir, "img"),
		[]entry{{name: "etc/", typ: tar.TypeDir}, {name: "etc/a", body: "a1"}, {name: "etc/gone", body: "x"},
			{name: "opt/old/f", body: "old"}, {name: "bin/tool", body: "#!", mode: 0o4755}},
		[]entry{{name: "etc/a", body: "a2"}, {name: "etc/.wh.gone"}, {name: "opt/old/.wh..wh..opq"}, {name: "opt/old/new", body: "new"},
			{name: "etc/link", typ: tar.TypeSymlink, link: "/etc/a"}, {name: "etc/hard", typ: tar.TypeLink, link: "etc/a"}})
	root, err := ociRootFS(filepath.Join(dir, "img"), filepath.Join(dir, "cache"))
	if err != nil {
		t.Fatal(err)
	}
	read := func(p string) string { b, _ := os.ReadFile(filepath.Join(root, p)); return string(b) }
	if read("etc/a") != "a2" || read("opt/old/new") != "new" || read("etc/hard") != "a2" {
		t.Fatalf("layers not applied in order: %q %q %q", read("etc/a"), read("opt/old/new"), read("etc/hard"))
	}
	for _, gone := range []string{"etc/gone", "opt/old/f"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); err == nil {
			t.Errorf("%s survived its whiteout", gone)
		}
	}
	if l, _ := os.Readlink(filepath.Join(root, "etc/link")); l != "/etc/a" {
		t.Errorf("symlink %q", l)
	}
	if fi, _ := os.Stat(filepath.Join(root, "bin/tool")); fi.Mode()&os.ModeSetuid != 0 {
		t.Error("the set-uid bit was kept")
	}
	again, err := ociRootFS(filepath.Join(dir, "img"), filepath.Join(dir, "cache"))
	if err != nil || again != root {
		t.Fatalf("the second use did not reuse the cache: %v %s", err, again)
	}
}

// A layer that tries to write outside the root: "..", absolute names, and a symlink planted in
// one entry and written through in the next. Everything must land inside the root.
func TestOCILayersCannotEscapeTheRoot(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(dir, "outside")
	os.Mkdir(outside, 0o755)
	writeLayout(t, filepath.Join(dir, "img"),
		[]entry{{name: "../../../../" + outside + "/dotdot", body: "x"},
			{name: outside + "/absolute", body: "x"},
			{name: "evil", typ: tar.TypeSymlink, link: outside},
			{name: "evil/through-symlink", body: "x"},
			{name: "rel", typ: tar.TypeSymlink, link: "../../../../../../" + outside},
			{name: "rel/through-relative", body: "x"},
			{name: "hard", typ: tar.TypeLink, link: "../../../../../etc/passwd"}})
	_, err := ociRootFS(filepath.Join(dir, "img"), filepath.Join(dir, "cache"))
	// The hard link to a file outside the image is refused; nothing was written outside.
	if err == nil || !strings.Contains(err.Error(), "hard link") {
		t.Fatalf("got %v", err)
	}
	entries, _ := os.ReadDir(outside)
	if len(entries) != 0 {
		t.Fatalf("a layer wrote outside the root: %v", entries)
	}
	writeLayout(t, filepath.Join(dir, "img2"),
		[]entry{{name: "../../../../" + outside + "/dotdot", body: "x"}, {name: "evil", typ: tar.TypeSymlink, link: outside},
			{name: "evil/through-symlink", body: "x"}})
	root, err := ociRootFS(filepath.Join(dir, "img2"), filepath.Join(dir, "cache"))
	if err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("a layer wrote outside the root: %v", entries)
	}
	// Clamped inside: the symlink's target, resolved in the root.
	if _, err := os.Stat(filepath.Join(root, outside, "through-symlink")); err != nil {
		t.Fatalf("the entry did not land inside the root: %v", err)
	}
}

func TestOCIDigestsAreChecked(t *testing.T) {
	dir := t.TempDir()
	layout := filepath.Join(dir, "img")
	writeLayout(t, layout, []entry{{name: "f", body: "original"}})
	// Replace the layer blob's content, keeping its name (digest).
	blobs, _ := filepath.Glob(filepath.Join(layout, "blobs", "sha256", "*"))
	tampered := 0
	for _, b := range blobs {
		data, _ := os.ReadFile(b)
		if len(data) > 2 && data[0] == 0x1f && data[1] == 0x8b { // the gzip layer
			os.WriteFile(b, layerOf(t, []entry{{name: "f", body: "tampered"}}), 0o644)
			tampered++
		}
	}
	if tampered != 1 {
		t.Fatalf("%d layers", tampered)
	}
	if _, err := ociRootFS(layout, filepath.Join(dir, "cache")); err == nil || !strings.Contains(err.Error(), "does not match its digest") {
		t.Fatalf("got %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "cache")); len(entries) != 0 {
		t.Fatalf("a tampered image was cached: %v", entries)
	}
}

// WithImage on an OCI layout: the sandbox runs from its layers.
func TestWithImageAnOCILayout(t *testing.T) {
	if os.Getenv("AIRLOCK_BIN") == "" || os.Geteuid() != 0 {
		t.Skip("needs AIRLOCK_BIN and root (run through ctest: e2e.test_sdk_go)")
	}
	var files []entry
	out, err := exec.Command("ldd", "/bin/sh").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range append([]string{"/bin/sh"}, strings.Fields(string(out))...) {
		if !strings.HasPrefix(f, "/") {
			continue
		}
		real, _ := filepath.EvalSymlinks(f)
		data, err := os.ReadFile(real)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, entry{name: strings.TrimPrefix(f, "/"), body: string(data)})
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	layout := filepath.Join(dir, "img")
	writeLayout(t, layout, append(files, entry{name: "marker", body: "layer one\n", mode: 0o644}),
		[]entry{{name: "marker", body: "layer two\n", mode: 0o644}})
	sb, err := CreateSandbox(context.Background(), "oci", WithImage(layout), WithWorkdir("/"),
		WithAirlockHome(filepath.Join(dir, "home")), WithLogOutput(&bytes.Buffer{}))
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Stop()
	r, err := sb.Exec(context.Background(), Command{Args: []string{"/bin/sh", "-c", "read l < /marker; echo \"$l\""}})
	if err != nil || string(r.Stdout) != "layer two\n" {
		t.Fatalf("%v: %q %q", err, r.Stdout, r.Stderr)
	}
}
