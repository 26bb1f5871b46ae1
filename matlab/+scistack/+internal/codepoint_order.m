function order = codepoint_order(keys)
%CODEPOINT_ORDER The permutation that sorts char rows by Unicode code points, as Python
%   sorts str (MATLAB's sort compares UTF-16 units, Octave's compares UTF-8 bytes).
n = numel(keys);
ascii = true;
for j = 1:n
    if any(double(keys{j}) > 127)
        ascii = false;
        break
    end
end
if ascii
    [~, order] = sort(keys);
    order = order(:)';
    return
end
cps = cell(1, n);
len = 0;
for j = 1:n
    cps{j} = scistack.internal.char_to_cp(keys{j});
    len = max(len, numel(cps{j}));
end
M = -ones(n, len);
for j = 1:n
    M(j, 1:numel(cps{j})) = cps{j};
end
[~, order] = sortrows(M);
order = order(:)';
end
