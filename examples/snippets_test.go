// Package examples_test checks that the Go snippets of README.md and of the
// package documentation are code that compiles and runs: each must appear
// verbatim in a Go file of the module (an example program or an Example
// function, which the tests build and run).
package examples_test

import (
	"go/ast"
	"go/doc/comment"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// root is the module's root directory.
const root = ".."

// snippet is a Go code block of a document.
type snippet struct {
	where string // file and line, for messages
	lines []string
}

func TestSnippetsAreCode(t *testing.T) {
	sources := goFiles(t)
	snippets := readmeSnippets(t)
	if len(snippets) < 2 {
		t.Fatalf("found %d Go blocks in README.md; the parser is broken", len(snippets))
	}
	snippets = append(snippets, docSnippets(t)...)
	for _, s := range snippets {
		if !foundIn(s.lines, sources) {
			t.Errorf("%s: this snippet is not in any Go file of the module; quote it from a program or an Example that the tests build and run:\n%s",
				s.where, strings.Join(s.lines, "\n"))
		}
	}
}

// Every package README.md names exists.
func TestReadmeImportPaths(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`github\.com/backplane-go/backplane/([a-z/]+[a-z])`).FindAllStringSubmatch(string(b), -1) {
		if fi, err := os.Stat(filepath.Join(root, m[1])); err != nil || !fi.IsDir() {
			t.Errorf("README.md names %s, which is not a package of the module", m[0])
		}
	}
}

// readmeSnippets returns the ```go blocks of README.md.
func readmeSnippets(t *testing.T) []snippet {
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var out []snippet
	var cur *snippet
	for i, line := range strings.Split(string(b), "\n") {
		switch {
		case cur == nil && strings.TrimSpace(line) == "```go":
			cur = &snippet{where: "README.md:" + itoa(i+1)}
		case cur != nil && strings.TrimSpace(line) == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.lines = append(cur.lines, line)
		}
	}
	if cur != nil {
		t.Fatalf("%s: unterminated code block", cur.where)
	}
	return out
}

// docSnippets returns the code blocks of package documentation that are
// Go (they parse as declarations or statements, or use := or fx.), not
// tables or URLs. Illustrations are left out: a block with an elided line
// ("...") or one that imports packages outside the module (example.com),
// and the documentation of internal packages.
func docSnippets(t *testing.T) []snippet {
	var out []snippet
	walk(t, func(path string) {
		if filepath.Base(path) != "doc.go" || strings.Contains(filepath.ToSlash(path), "/internal/") {
			return
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			t.Fatal(err)
		}
		if f.Doc == nil {
			return
		}
		rel, _ := filepath.Rel(root, path)
		var p comment.Parser
		for _, block := range p.Parse(f.Doc.Text()).Content {
			code, ok := block.(*comment.Code)
			if !ok || !isGo(code.Text) || illustration(code.Text) {
				continue
			}
			out = append(out, snippet{where: rel + " (package documentation)", lines: strings.Split(strings.TrimRight(code.Text, "\n"), "\n")})
		}
	})
	return out
}

// illustration reports whether a code block is an illustration rather
// than code: it elides lines or imports packages outside the module.
func illustration(s string) bool {
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) == "..." {
			return true
		}
	}
	return strings.Contains(s, `"example.com/`)
}

// isGo reports whether a documentation code block is Go code.
func isGo(s string) bool {
	if strings.Contains(s, ":=") || strings.Contains(s, "import (") || strings.Contains(s, "fx.New(") {
		return true
	}
	fset := token.NewFileSet()
	if _, err := parser.ParseFile(fset, "", "package p\n"+s, 0); err == nil {
		return true
	}
	f, err := parser.ParseFile(fset, "", "package p\nfunc _() {\n"+s+"\n}", 0)
	if err != nil {
		return false
	}
	labels := false // URL lines parse as labels followed by comments
	ast.Inspect(f, func(n ast.Node) bool {
		if _, ok := n.(*ast.LabeledStmt); ok {
			labels = true
		}
		return true
	})
	return !labels
}

// goFiles returns the lines, trimmed, of every Go file of the module.
func goFiles(t *testing.T) [][]string {
	var out [][]string
	walk(t, func(path string) {
		if !strings.HasSuffix(path, ".go") || filepath.Base(path) == "doc.go" {
			return
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, trim(strings.Split(string(b), "\n")))
	})
	return out
}

func walk(t *testing.T, fn func(path string)) {
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			fn(path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// foundIn reports whether lines, trimmed, are a contiguous run of lines
// of one of the files.
func foundIn(lines []string, files [][]string) bool {
	want := trim(lines)
	for len(want) > 0 && want[0] == "" {
		want = want[1:]
	}
	for len(want) > 0 && want[len(want)-1] == "" {
		want = want[:len(want)-1]
	}
	if len(want) == 0 {
		return true
	}
	for _, f := range files {
		for i := 0; i+len(want) <= len(f); i++ {
			if f[i] == want[0] && equal(f[i:i+len(want)], want) {
				return true
			}
		}
	}
	return false
}

func trim(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = strings.TrimSpace(l)
	}
	return out
}

func equal(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func itoa(n int) string {
	s := ""
	for {
		s = string(rune('0'+n%10)) + s
		n /= 10
		if n == 0 {
			return s
		}
	}
}
