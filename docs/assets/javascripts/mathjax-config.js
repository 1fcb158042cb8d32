// MathJax 3 configuration for pymdownx.arithmatex (generic mode) and notebook markdown.
// MathJax itself is vendored (assets/vendor/mathjax/tex-svg.js): the site needs no network.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    // Only typeset what arithmatex marked, and notebook markdown cells.
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex|jp-RenderedMarkdown|jp-MarkdownOutput",
    enableMenu: false,
  },
  svg: { fontCache: "global" },
};
