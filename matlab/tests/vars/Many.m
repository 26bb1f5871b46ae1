classdef Many < scistack.BaseVariable
end
