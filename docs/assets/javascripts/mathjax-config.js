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
    // Only typeset what arithmatex marked and notebook markdown cells: the page is ignored
    // (its containers' classes), those elements re-enabled with all their children.
    ignoreHtmlClass: "md-container|md-header",
    processHtmlClass: "arithmatex|jp-RenderedMarkdown",
    enableMenu: false,
  },
  svg: { fontCache: "global" },
};
