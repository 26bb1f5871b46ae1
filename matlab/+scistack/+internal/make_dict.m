function d = make_dict(keys, vals)
%MAKE_DICT A JSON object as a MATLAB value: a 1x1 struct when every key is a valid field
%   name (is_field_name: a letter first, then letters, digits and _, at most namelengthmax
%   characters, not a keyword), else a containers.Map (char keys, any values).
if isempty(keys)
    d = struct();
    return
end
valid = true;
for j = 1:numel(keys)
    if ~scistack.internal.is_field_name(keys{j})
        valid = false;
        break
    end
end
if valid && numel(unique(keys)) == numel(keys)
    d = cell2struct(vals(:), keys(:), 1);
else
    d = containers.Map(keys, vals, 'UniformValues', false);
end
end
