function d = store_dir(root)
%STORE_DIR The folder holding the objects and the journal MATLAB reads of the project at
%   ROOT: <ROOT>/.scistack, or for a lab project (config.json names a shared journal) the
%   local mirror <ROOT>/.scistack/cache, laid out the same way: cache/refs.log (the shared
%   journal's lines) and cache/objects (Python's read-through cache), which
%   scistack.internal.lab_sync fills.
persistent lab
if isempty(lab)
    lab = containers.Map('KeyType', 'char', 'ValueType', 'logical');
end
if ~isKey(lab, root)
    lab(root) = scistack.internal.is_lab(root);
end
if lab(root)
    d = fullfile(root, '.scistack', 'cache');
else
    d = fullfile(root, '.scistack');
end
end
