// Renders the chart with Go's own text/template and Sprig, the template language and function library Helm's
// engine is built on, so test/helm/go-engine.test.ts can hold the JavaScript stand-in (render.ts) to them.
//
// Input on stdin, one JSON object: {"chartDir": "...", "values": {...}, "release": {"name", "namespace",
// "isUpgrade"}}. The values arrive already merged; JSON numbers decode to float64, as values files do in Helm.
// Output on stdout: {"files": {"templates/x.yaml": "rendered text", ...}} or {"error": "..."}.
//
// What Helm adds to the language is written here the way Helm documents it: include, required and toYaml as
// functions, env and expandenv removed, a missing key printing nothing, partials (_*.tpl) rendered only through
// include, and .Files with Glob, Get and AsConfig.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	sprig "github.com/Masterminds/sprig/v3"
	"sigs.k8s.io/yaml"
)

type request struct {
	ChartDir string                 `json:"chartDir"`
	Values   map[string]interface{} `json:"values"`
	Release  struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
		IsUpgrade bool   `json:"isUpgrade"`
	} `json:"release"`
}

type response struct {
	Files map[string]string `json:"files,omitempty"`
	Error string            `json:"error,omitempty"`
}

// chartMeta is the part of Chart.yaml the templates read as .Chart, under Helm's field names.
type chartMeta struct {
	Name        string `json:"name"`
	Version     string `json:"version"`
	AppVersion  string `json:"appVersion"`
	Description string `json:"description"`
	Type        string `json:"type"`
	KubeVersion string `json:"kubeVersion"`
}

type release struct {
	Name      string
	Namespace string
	Service   string
	IsInstall bool
	IsUpgrade bool
	Revision  int
}

// chartFiles is .Files: the chart's files outside templates/, by slash-separated path within the chart.
type chartFiles map[string][]byte

// Glob keeps the files whose path matches a shell pattern ('*' stops at '/').
func (f chartFiles) Glob(pattern string) chartFiles {
	matched := chartFiles{}
	for name, data := range f {
		if ok, _ := path.Match(pattern, name); ok {
			matched[name] = data
		}
	}
	return matched
}

func (f chartFiles) Get(name string) string { return string(f[name]) }

// AsConfig is the files as a ConfigMap's data: base name to content, marshalled as YAML.
func (f chartFiles) AsConfig() string {
	data := make(map[string]string, len(f))
	for name, content := range f {
		data[path.Base(name)] = string(content)
	}
	return toYaml(data)
}

// toYaml marshals as Helm does (sigs.k8s.io/yaml), without the final newline; a value that cannot be
// marshalled gives the empty string, as in Helm.
func toYaml(v interface{}) string {
	out, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(out), "\n")
}

// required fails the render with the message when the value is absent or the empty string.
func required(message string, v interface{}) (interface{}, error) {
	if s, isString := v.(string); v == nil || (isString && s == "") {
		return v, fmt.Errorf("%s", message)
	}
	return v, nil
}

// The files Helm keeps out of .Files: the chart's metadata, its values and schema, and what it renders.
var notFiles = map[string]bool{"Chart.yaml": true, "values.yaml": true, "values.schema.json": true, ".helmignore": true}

func loadFiles(chartDir string) (chartFiles, error) {
	files := chartFiles{}
	err := filepath.WalkDir(chartDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(chartDir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == "templates" || rel == "charts" {
				return filepath.SkipDir
			}
			return nil
		}
		if notFiles[rel] {
			return nil
		}
		content, err := os.ReadFile(p)
		files[rel] = content
		return err
	})
	return files, err
}

func render(req request) (map[string]string, error) {
	metaText, err := os.ReadFile(filepath.Join(req.ChartDir, "Chart.yaml"))
	if err != nil {
		return nil, err
	}
	var meta chartMeta
	if err := yaml.Unmarshal(metaText, &meta); err != nil {
		return nil, fmt.Errorf("Chart.yaml: %w", err)
	}
	files, err := loadFiles(req.ChartDir)
	if err != nil {
		return nil, err
	}

	root := template.New("chart")
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	funcs["toYaml"] = toYaml
	funcs["required"] = required
	funcs["include"] = func(name string, data interface{}) (string, error) {
		var out bytes.Buffer
		err := root.ExecuteTemplate(&out, name, data)
		return out.String(), err
	}
	root.Funcs(funcs).Option("missingkey=zero")

	entries, err := os.ReadDir(filepath.Join(req.ChartDir, "templates"))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, entry := range entries {
		name := "templates/" + entry.Name()
		text, err := os.ReadFile(filepath.Join(req.ChartDir, name))
		if err != nil {
			return nil, err
		}
		if _, err := root.New(name).Parse(string(text)); err != nil {
			return nil, err
		}
		if !strings.HasPrefix(entry.Name(), "_") {
			names = append(names, name)
		}
	}
	sort.Strings(names)

	rendered := map[string]string{}
	for _, name := range names {
		data := map[string]interface{}{
			"Values": req.Values,
			"Release": release{
				Name: req.Release.Name, Namespace: req.Release.Namespace, Service: "Helm",
				IsInstall: !req.Release.IsUpgrade, IsUpgrade: req.Release.IsUpgrade, Revision: 1,
			},
			"Chart":    meta,
			"Files":    files,
			"Template": map[string]string{"Name": meta.Name + "/" + name, "BasePath": meta.Name + "/templates"},
		}
		var out bytes.Buffer
		if err := root.ExecuteTemplate(&out, name, data); err != nil {
			return nil, err
		}
		// With missingkey=zero a missing value prints as "<no value>"; Helm blanks it.
		rendered[name] = strings.ReplaceAll(out.String(), "<no value>", "")
	}
	return rendered, nil
}

func main() {
	var req request
	var resp response
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		resp.Error = "reading the request: " + err.Error()
	} else if files, err := render(req); err != nil {
		resp.Error = err.Error()
	} else {
		resp.Files = files
	}
	if err := json.NewEncoder(os.Stdout).Encode(resp); err != nil {
		os.Exit(1)
	}
}
