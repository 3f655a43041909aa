// Trace tree: click the triangle of a block to collapse or expand what it contains.
document.addEventListener("click", (event) => {
  const toggle = event.target.closest(".toggle");
  if (!toggle || !toggle.textContent) return;
  const item = toggle.parentElement;
  item.classList.toggle("collapsed");
  toggle.textContent = item.classList.contains("collapsed") ? "▸" : "▾";
});
