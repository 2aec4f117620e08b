// Buttons that keep what a page shows once (the authenticator key, recovery codes): copy,
// download as a text file, print. The page works without them; they appear when they can work.
function shownText(source) {
  var items = source.querySelectorAll("li");
  if (items.length === 0) { return source.textContent.replace(/\s+/g, ""); }
  return Array.prototype.map.call(items, function (li) { return li.textContent.trim(); }).join("\n") + "\n";
}
document.querySelectorAll("button[data-copy]").forEach(function (button) {
  var source = document.getElementById(button.getAttribute("data-copy"));
  if (!source || !navigator.clipboard) { return; }
  button.hidden = false;
  button.addEventListener("click", function () {
    navigator.clipboard.writeText(shownText(source));
  });
});
document.querySelectorAll("button[data-download]").forEach(function (button) {
  var source = document.getElementById(button.getAttribute("data-download"));
  if (!source || !window.Blob || !window.URL) { return; }
  button.hidden = false;
  button.addEventListener("click", function () {
    var link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([shownText(source)], { type: "text/plain" }));
    link.download = button.getAttribute("data-filename") || "codes.txt";
    document.body.appendChild(link);
    link.click();
    link.remove();
  });
});
document.querySelectorAll("button[data-print]").forEach(function (button) {
  if (!window.print) { return; }
  button.hidden = false;
  button.addEventListener("click", function () { window.print(); });
});
