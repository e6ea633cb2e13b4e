// Typeset the formulas that pymdownx.arithmatex (generic mode) marked, with the KaTeX served by the site.
// Inline math arrives as <span class="arithmatex">\(...\)</span>, display math as <div class="arithmatex">\[...\]</div>.
(function () {
  "use strict";

  function stripDelimiters(text) {
    var inline = /^\\\(([\s\S]*)\\\)$/.exec(text);
    if (inline) return { tex: inline[1], display: false };
    var block = /^\\\[([\s\S]*)\\\]$/.exec(text);
    if (block) return { tex: block[1], display: true };
    return null; // e.g. \begin{align}...\end{align}, kept whole by arithmatex
  }

  function typeset(root) {
    var nodes = (root || document).querySelectorAll(".arithmatex");
    for (var i = 0; i < nodes.length; i++) {
      var node = nodes[i];
      if (node.getAttribute("data-katex") === "done") continue;
      var text = node.textContent.trim();
      var math = stripDelimiters(text) || { tex: text, display: node.tagName === "DIV" };
      katex.render(math.tex, node, { displayMode: math.display, throwOnError: false });
      node.setAttribute("data-katex", "done");
    }
  }

  if (typeof window.document$ !== "undefined" && window.document$.subscribe) {
    // Material's page observable: also fires after instant navigation.
    window.document$.subscribe(function () {
      typeset(document);
    });
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () {
      typeset(document);
    });
  } else {
    typeset(document);
  }
})();
