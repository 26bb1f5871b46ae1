function cfg = project(new)
%PROJECT The project set by scistack.configure_database (get), or set it (one argument).
persistent current
if nargin == 1
    current = new;
    cfg = new;
    return
end
if isempty(current)
    error('scistack:notConfigured', ['no scistack project is configured in this session: ', ...
        'call scistack.configure_database(''path/to/project.duckdb'', {''subject'', ', ...
        '''session''}) first']);
end
cfg = current;
end
